"""Need definitions: one module per need, each with its instruction text and labelling rule."""
