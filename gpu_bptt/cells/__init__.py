from .elman import (ElmanCache, ElmanGrads, ElmanOutput, ElmanPairOutput, elman_backward,
                    elman_backward_pair, elman_forward, elman_forward_pair)

__all__ = ["ElmanCache", "ElmanGrads", "ElmanOutput", "ElmanPairOutput", "elman_backward",
           "elman_backward_pair", "elman_forward", "elman_forward_pair"]
