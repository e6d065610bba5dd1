"""Scripts that download or locate, verify and prepare the real data sets (one per data set)."""
