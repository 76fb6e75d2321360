"""``namedmesh check``: print the processor map and check every mesh dim's collectives.

Run it first on a new machine or cluster (a Cloud TPU VM, a GPU host, a
multi-worker job): it builds the strategy, prints which device runs which mesh
processor, runs one all-to-all and one all-reduce along each mesh dim and
compares each with the single-device result.  Exit status 0 when everything
agrees, 1 on a mismatch, 2 on bad options.

    namedmesh check --mesh "b0:2;b1:2" --strategy mirrored --devices /cpu:3,/cpu:2,/cpu:1,/cpu:0
    namedmesh check --mesh "b0:4;b1:8" --strategy tpu --tpu ""    # on a Cloud TPU VM
    namedmesh check --mesh "b0:2;b1:4" --strategy multi-worker     # every worker, with TF_CONFIG
"""

import sys

STRATEGIES = ("mirrored", "multi-worker", "tpu", "placement")


def add_arguments(parser) -> None:
    parser.add_argument("--mesh", required=True, help="mesh shape, e.g. 'b0:2;b1:4'")
    parser.add_argument("--strategy", choices=STRATEGIES, default="mirrored",
                        help="mirrored (this host's devices), multi-worker (TF_CONFIG), tpu "
                             "(TPUClusterResolver) or placement (no tf.distribute)")
    parser.add_argument("--devices", default="",
                        help="comma-separated devices for mirrored / placement, in replica "
                             "order (default: the GPUs, else logical CPUs)")
    parser.add_argument("--tpu", default="", help="TPU name or address ('' on a TPU VM)")
    parser.add_argument("--logical-to-physical", default="auto",
                        help="TPU: 'auto' (mtf's tiling), 'none', or a comma-separated "
                             "permutation; other strategies: 'none' or a permutation of "
                             "replica ids (default: auto on TPU, none elsewhere)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds a collective waits for its group (default: the Mesh's)")


def _logical_to_physical(text: str, tpu: bool):
    from namedmesh.cli.main import UsageError
    text = text.strip().lower()
    if text == "auto":
        return "auto" if tpu else None
    if text in ("none", ""):
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise UsageError("--logical-to-physical must be 'auto', 'none' or a comma-separated "
                         "list of integers, got %r" % text) from None


def _mesh_size(mesh_text: str) -> int:
    from namedmesh.mesh.mesh import parse_mesh_shape
    return parse_mesh_shape(mesh_text).size


def build_mesh(args):
    """The mesh of ``--mesh`` on the strategy the options describe."""
    import tensorflow as tf

    import namedmesh as nm
    from namedmesh.cli.main import UsageError
    from namedmesh.mesh.processor_map import parse_device
    size = _mesh_size(args.mesh)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    l2p = _logical_to_physical(args.logical_to_physical, args.strategy == "tpu")
    kwargs = {} if args.timeout is None else {"collective_timeout": args.timeout}
    if args.strategy == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=args.tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        topology = tf.tpu.experimental.initialize_tpu_system(resolver)
        assignment = nm.tpu_device_assignment(topology, args.mesh, l2p)
        strategy = tf.distribute.TPUStrategy(resolver, experimental_device_assignment=assignment)
        return nm.Mesh(args.mesh, "", strategy=strategy, **kwargs)
    if args.strategy == "multi-worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return nm.Mesh(args.mesh, "", strategy=strategy, logical_to_physical=l2p, **kwargs)
    if not devices:  # physical devices: listing them does not start TensorFlow's runtime
        gpus = tf.config.list_physical_devices("GPU")
        prefix = "/gpu:%d" if len(gpus) >= size else "/cpu:%d"
        devices = [prefix % i for i in range(size)]
    cpus = [parse_device(d).index for d in devices if parse_device(d).device_type == "CPU"]
    if cpus and nm.configure_cpu_devices(max(max(cpus) + 1, 8)) <= max(cpus):
        raise UsageError("device /cpu:%d does not exist: TensorFlow has %d logical CPU "
                         "device(s)" % (max(cpus), len(tf.config.list_logical_devices("CPU"))))
    if len(devices) != size:
        raise UsageError("--mesh %r has %d processors but %d devices were given: %s"
                         % (args.mesh, size, len(devices), devices))
    if args.strategy == "placement":
        return nm.Mesh(args.mesh, "", devices=devices, logical_to_physical=l2p)
    strategy = tf.distribute.MirroredStrategy(devices)
    return nm.Mesh(args.mesh, "", strategy=strategy, logical_to_physical=l2p, **kwargs)


def run_check(args) -> int:
    from namedmesh.lowering.device_check import check_collectives
    mesh = build_mesh(args)
    report = check_collectives(mesh)
    sys.stdout.write(report.render() + "\n")
    return 0 if report.ok else 1
