"""Running the serving side on a plain machine: the local tritonserver process and readiness checks.

tritonserver  start and stop the real Triton Inference Server that the nvidia-pytriton wheel carries
ready         wait until a URL answers 200 (Triton's health endpoints, the web app, a peer server)
"""
