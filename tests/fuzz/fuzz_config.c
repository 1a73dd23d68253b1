/* Fuzzes the server's configuration-file reader: arbitrary bytes as a
 * --config-file must give a config or an error, never a crash or a leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/synod-fuzz-config-%d.yaml", (int)getpid());
    log_set_level(LOG_FATAL);
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  char *argv[] = {"synod", "--config-file", path, NULL};
  char *envp[] = {NULL};
  server_config cfg;
  char err[512];
  int code;
  config_parse(&cfg, 3, argv, envp, err, sizeof err, &code);
  config_free(&cfg);
  return 0;
}
