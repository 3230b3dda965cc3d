from .elman import (ElmanCache, ElmanGrads, ElmanOutput, ElmanPairOutput, elman_backward,
                    elman_backward_pair, elman_forward, elman_forward_pair)
from .gru import (GRUCache, GRUGrads, GRUOutput, gru_backward, gru_backward_pair, gru_forward,
                  gru_forward_pair)
from .lstm import (LSTMCache, LSTMGrads, LSTMOutput, lstm_backward, lstm_backward_pair,
                   lstm_forward, lstm_forward_pair)

__all__ = ["ElmanCache", "ElmanGrads", "ElmanOutput", "ElmanPairOutput", "GRUCache", "GRUGrads",
           "GRUOutput", "LSTMCache", "LSTMGrads", "LSTMOutput", "elman_backward",
           "elman_backward_pair", "elman_forward", "elman_forward_pair", "gru_backward",
           "gru_backward_pair", "gru_forward", "gru_forward_pair", "lstm_backward",
           "lstm_backward_pair", "lstm_forward", "lstm_forward_pair"]
