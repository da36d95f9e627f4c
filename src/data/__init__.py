"""Data: find image files, check them, split them, read and letterbox them."""
