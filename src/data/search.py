"""The image-search command is now `python -m src.search` (src/search.py); its library is
src/data/image_search.py. This module only tells a user of the old command where it went."""

from src.errors import exit_with_error

if __name__ == "__main__":  # the command moved up, beside the other entry points
    exit_with_error("this command is now python -m src.search (same arguments)", 2)
