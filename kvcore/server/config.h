/* config.h (private to kvcore/server) - etcd's command line, ETCD_*
 * environment variables and YAML config file, with etcd's defaults. */
#ifndef SYNOD_SERVER_CONFIG_H
#define SYNOD_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  char **v;
  size_t n;
} strlist;

typedef enum { COMPACT_OFF, COMPACT_PERIODIC, COMPACT_REVISION } compaction_mode;

typedef struct {
  char *name;
  char *data_dir;
  char *wal_dir;
  strlist listen_client_urls;
  strlist advertise_client_urls;
  strlist listen_peer_urls;
  strlist initial_advertise_peer_urls;
  char *initial_cluster;
  char *initial_cluster_state; /* "new" or "existing" */
  char *initial_cluster_token;
  uint64_t heartbeat_ms;
  uint64_t election_ms;
  uint64_t snapshot_count;
  int64_t quota_backend_bytes; /* after defaulting: > 0 */
  uint64_t max_request_bytes;
  uint64_t max_txn_ops;
  uint64_t max_snapshots, max_wals;
  bool strict_reconfig_check;
  bool pre_vote;
  bool force_new_cluster;
  compaction_mode auto_compaction_mode;
  int64_t auto_compaction_retention; /* periodic: ms; revision: revisions */
  char *log_level;
  int64_t watch_progress_notify_ms;
  int64_t grpc_keepalive_min_time_ms, grpc_keepalive_interval_ms, grpc_keepalive_timeout_ms;
  bool show_version;
  bool show_help;
} server_config;

/* Parses argv and the environment (and --config-file if given) into cfg.
 * Returns 0, or -1 with a message in err (etcd's wording where it has one);
 * *exit_code tells main what to exit with (2 for usage errors, as Go's flag
 * package does). */
int config_parse(server_config *cfg, int argc, char **argv, char **envp, char *err, size_t err_len,
                 int *exit_code);
void config_free(server_config *cfg);
/* The --help text. */
const char *config_usage(void);

/* Helpers shared with the rest of the server. */
int parse_duration_ms(const char *s, int64_t *out); /* Go duration: "1h30m", "5s", "100ms" */
/* Splits "http://a:1,http://b:2" into a list; returns -1 on an empty item. */
int strlist_split(strlist *out, const char *csv);
void strlist_free(strlist *l);
/* "http://127.0.0.1:2379" -> "127.0.0.1:2379" for gRPC; -1 if the URL is not
 * http:// or https:// with a host and port. */
int url_host_port(const char *url, char *out, size_t out_len, bool *tls);

#endif
