"""Everything that imports torch. Nothing outside stage ``run`` methods imports this package."""
