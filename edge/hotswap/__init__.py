"""Model lifecycle at the edge: follow the production pointer, shadow-test, promote, roll back."""
