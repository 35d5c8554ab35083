"""How much of an artifact runs where: the share of a program inside a fast backend, and
what is left outside it. A build that hands over an artifact slower than its PyTorch model
says why, from these reports (report.json, bench.md, and the summary when the share is low)."""
