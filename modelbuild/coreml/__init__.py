"""Core ML specifics: building converter arguments, reading and writing packages."""
