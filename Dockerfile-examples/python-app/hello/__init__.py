"""A tiny application for the build example: counts the words of a text file."""

import collections
import pathlib


def top_words(path, n=3):
    """The n most common words in the file, most common first (ties by name)."""
    words = pathlib.Path(path).read_text().split()
    counts = collections.Counter(w.lower().strip(".,") for w in words)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
