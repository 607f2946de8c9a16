"""What a task tells whoever runs it (the local launcher, SLURM, Kubernetes): exit statuses and
the one output line the launcher acts on. Every layer agrees on these; none imports another.
"""

EXIT_OK = 0
EXIT_FAILURE = 1      # training failed; a restart may help
EXIT_USER_ERROR = 2   # bad flag, config, spec or TF_CONFIG: a restart cannot help
# Preempted: asked to stop (SIGTERM), the task saved its training state at a step boundary, with
# every other task of a synchronous job, and ended. Restart it: the job resumes at that step.
# (75 is EX_TEMPFAIL, "temporary failure; try again".)
EXIT_PREEMPTED = 75

# What a task prints when its gRPC server cannot bind its port; the launcher then picks new ports.
GRPC_START_FAILURE = "could not start its gRPC server"
