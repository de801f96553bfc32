"""Reusable code for the "Inside the CLS token" notebooks.

Data flows one way: data -> model -> train / experiments -> checkpoint -> attention ->
plots / widgets; notebooks sit on top. runtime (seed, threads, device, paths) is set up
once by `runtime.start()`; timm_adapter holds everything the series knows about timm;
images decodes uploaded pictures; exercises holds the checks behind the exercises.
"""
