"""Model code of mlops-stack: what runs inside the one container image.

Imports only the standard library, its own modules and model_code/requirements.txt.
"""
