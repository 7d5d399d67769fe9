"""Training: the specification's recipe, its run on several processes, stopping and cost estimates."""
