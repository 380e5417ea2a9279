"""nasc.compiler"""
