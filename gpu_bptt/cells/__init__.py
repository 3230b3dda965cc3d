from .elman import ElmanCache, ElmanGrads, ElmanOutput, elman_backward, elman_forward
from .gru import GRUCache, GRUGrads, GRUOutput, gru_backward, gru_forward
from .lstm import LSTMCache, LSTMGrads, LSTMOutput, lstm_backward, lstm_forward

__all__ = ["ElmanCache", "ElmanGrads", "ElmanOutput", "GRUCache", "GRUGrads", "GRUOutput",
           "LSTMCache", "LSTMGrads", "LSTMOutput", "elman_backward", "elman_forward",
           "gru_backward", "gru_forward", "lstm_backward", "lstm_forward"]
