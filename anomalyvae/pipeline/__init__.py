"""The jobs the CLI runs, over the library: train and evaluate on images, score files, the table jobs."""
