"""Storage: checkpoints, run folders, the workspace, output folders and their locks, safe files."""
