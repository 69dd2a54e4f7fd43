"""What the HTTP layer calls: the model registry, the served model, training jobs and their process."""
