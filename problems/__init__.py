"""Problem declarations (model_code/problem.py); a folder may carry its own Python module."""
