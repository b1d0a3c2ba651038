"""StudyShare benchmarks: `make bench` prints a table of figures side by side with targets."""
