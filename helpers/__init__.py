"""Reusable code for the "Inside the CLS token" notebooks.

model -> data -> train -> checkpoint -> attention -> plots / widgets; notebooks sit on top.
"""
