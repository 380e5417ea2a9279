"""nasc.search"""
