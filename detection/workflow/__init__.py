"""The detection workflow: its steps without AWS, their Lambda handlers, and the run's files (S3 or a folder)."""
