"""The generative models (Markov, Transformer, VAE) and their training code; never imports companion."""
