"""How to compute on the machines: options, the auto choice and its reason, the factory."""

from tfdist.strategy.choice import (ROLE_EVALUATOR, ROLE_SERVER, ROLE_TRAINER, StrategyChoice,
                                    choose)
from tfdist.strategy.options import STRATEGY_NAMES, StrategyError, StrategyOptions

__all__ = ["ROLE_EVALUATOR", "ROLE_SERVER", "ROLE_TRAINER", "STRATEGY_NAMES", "StrategyChoice",
           "StrategyError", "StrategyOptions", "choose"]
