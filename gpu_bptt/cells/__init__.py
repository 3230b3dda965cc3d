from .elman import (ElmanCache, ElmanGrads, ElmanOutput, ElmanPairOutput, elman_backward,
                    elman_backward_pair, elman_forward, elman_forward_pair)
from .gru import GRUCache, GRUGrads, GRUOutput, gru_backward, gru_forward
from .lstm import LSTMCache, LSTMGrads, LSTMOutput, lstm_backward, lstm_forward

__all__ = ["ElmanCache", "ElmanGrads", "ElmanOutput", "ElmanPairOutput", "GRUCache", "GRUGrads",
           "GRUOutput", "LSTMCache", "LSTMGrads", "LSTMOutput", "elman_backward",
           "elman_backward_pair", "elman_forward", "elman_forward_pair", "gru_backward",
           "gru_forward", "lstm_backward", "lstm_forward"]
