"""Run the spike in ONE process with flwr.simulation.run_simulation.

--backend ray     : needs `pip install "flwr[simulation]"` (ray).
--backend thread  : NO ray: injects a tiny in-process Backend (ClientApps run in the VCE worker threads).
                    flwr 1.42's simulation engine hard-codes `from .backend.raybackend import RayBackend`
                    inside vce_api.start_vce.backend_fn, so we register a fake module under that name.
"""
import argparse, copy, json, os, resource, sys, time, types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def install_thread_backend(num_workers: int):
    from flwr.server.superlink.fleet.vce.backend.backend import Backend

    class ThreadBackend(Backend):
        def __init__(self, backend_config):
            self.app_fn = None
            self.n = num_workers

        def build(self, app_fn):
            self.app_fn = app_fn

        @property
        def num_workers(self):
            return self.n

        def is_worker_idle(self):
            return True

        def terminate(self):
            pass

        def process_message(self, message, context):
            # exceptions propagate to vce_api.worker(), which turns them into an error reply
            # Ray pickles Message/Context into the actor; we must copy too, otherwise e.g. SecAgg+'s
            # setup stage (one RecordDict shared by all nodes' messages) is mutated by the first client
            # (`configs.pop("stage")` -> KeyError: 'stage' for the others).
            message, context = copy.deepcopy(message), copy.deepcopy(context)
            out = self.app_fn()(message=message, context=context)
            return out, context

    mod = types.ModuleType("flwr.server.superlink.fleet.vce.backend.raybackend")
    mod.RayBackend = ThreadBackend
    sys.modules["flwr.server.superlink.fleet.vce.backend.raybackend"] = mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="thread", choices=["thread", "ray"])
    ap.add_argument("--mode", default="fedavg", choices=["fedavg", "secagg"])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="thread backend: concurrent ClientApps (0=clients)")
    ap.add_argument("--cfg", default="{}", help="JSON run-config overrides, e.g. '{\"num-rounds\":2}'")
    a = ap.parse_args()
    os.environ["SPIKE_CFG"] = a.cfg
    if a.backend == "thread":
        install_thread_backend(a.workers or a.clients)
    from flwr.simulation import run_simulation
    from spikeapp import client_app, server_app
    sa, ca = (server_app.app, client_app.app) if a.mode == "fedavg" else (server_app.secagg_app, client_app.secagg_app)
    t0 = time.time()
    # backend_name != "ray" skips flwr's `find_spec("ray")` exit(701) check; start_vce ignores the name.
    run_simulation(server_app=sa, client_app=ca, num_supernodes=a.clients, backend_name=a.backend,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    print(f"SPIKE_WALL total={time.time()-t0:.2f}s maxrss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f}MB "
          f"children_maxrss={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024:.0f}MB", flush=True)


if __name__ == "__main__":
    main()
