#include <string.h>

#include "server.h"

int main(int argc, char **argv, char **envp) {
  /* `synod snapshot restore ...` is etcdutl's job; everything else runs a member. */
  if (argc > 1 && strcmp(argv[1], "snapshot") == 0) return synod_snapshot_main(argc - 2, argv + 2);
  return synod_main(argc, argv, envp);
}
