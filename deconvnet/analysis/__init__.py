"""The paper's analyses (Zeiler & Fergus 2014, Sec. 4-5): filters, invariance, correspondence, evolution."""
