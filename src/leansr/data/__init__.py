"""Image files, MATLAB-style resizing and the benchmark degradation."""
