"""What is worked out from a call: the post-call analysis (summary, structured data, success)."""

from parley.analysis.post_call import AnalysisModelError, CallAnalysis, Line, analyze

__all__ = ["AnalysisModelError", "CallAnalysis", "Line", "analyze"]
