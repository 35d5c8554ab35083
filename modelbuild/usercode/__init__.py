"""The user's own code and files: which ones a model reads, and how a stage imports them.

A model's Python modules, weights and data are snapshotted into the store when they are
hashed (``store/snapshots.py``); stages import and load those snapshots, never the user's
folders, so a stage computes from exactly the bytes its key names, and two projects whose
modules share a name never see each other's code.
"""
