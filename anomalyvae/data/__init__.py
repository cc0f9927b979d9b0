"""Reading data: IDX files, image files and folder layouts, tables and their encoding, the bundled sets.

Everything here turns what a user has on disk into tensors; nothing here knows about models."""
