"""What a recipe costs beyond its time: the FLOPs of its budget, and a profile of one epoch."""
