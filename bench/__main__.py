from bench.run import entry

entry()
