"""Models: one file per model of the book, built from genlib.nn blocks."""
