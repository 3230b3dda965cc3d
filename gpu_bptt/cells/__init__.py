from .elman import ElmanCache, ElmanGrads, ElmanOutput, elman_backward, elman_forward

__all__ = ["ElmanCache", "ElmanGrads", "ElmanOutput", "elman_backward", "elman_forward"]
