"""The ``namedmesh`` console command."""
