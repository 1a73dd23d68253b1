/* server.h - a Synod member: etcd's flags in, a serving member out.
 * This is the whole of kvcore/server's public surface; build/bin/synod is
 * main() calling it. */
#ifndef SYNOD_SERVER_H
#define SYNOD_SERVER_H

/* Runs a member until SIGINT or SIGTERM; returns the process exit code. */
int synod_main(int argc, char **argv, char **envp);
/* `synod snapshot <args>` (argv after "snapshot"): restore; see restore.c. */
int synod_snapshot_main(int argc, char **argv);

#endif
