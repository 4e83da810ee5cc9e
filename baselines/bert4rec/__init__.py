"""BERT4Rec through RecBole 1.2.1, contained: RecBole runs only in a subprocess (``worker``) that
restores the NumPy aliases it needs, so nothing of it touches the calling process."""
