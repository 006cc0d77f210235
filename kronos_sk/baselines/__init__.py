"""Baselines for Kronos: an iTransformer forecaster, sktime comparison forecasters and
synthetic K-line path generators. Independent of the Kronos modules."""

from kronos_sk.baselines.itransformer import ITransformerForecaster

__all__ = ["ITransformerForecaster"]
