"""Pretrained weight files shipped with deconvnet (installed as the package deconvnet.weights)."""
