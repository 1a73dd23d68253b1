/* etcd's configuration surface: command-line flags (Go flag syntax), ETCD_*
 * environment variables, and the YAML --config-file.
 *
 * Every etcd 3.5 flag is known here. Each is one of:
 *   ON     implemented;
 *   LATER  implemented by a later piece of work: accepted only at etcd's
 *          default value, anything else is refused with "not supported yet"
 *          (never ignored silently);
 *   NOOP   tunes something Synod does not have (bbolt, the v2 API, proxy
 *          mode): accepted at any value, with a warning when not default.
 * Anything else is an unknown flag, as in etcd. */
#include "config.h"

#include "base.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STR, T_BOOL, T_UINT, T_INT, T_DUR, T_URLS } flag_type;
typedef enum { ON, LATER, NOOP } flag_support;

typedef struct {
  const char *name;
  flag_type type;
  const char *def; /* etcd's default, as text */
  flag_support support;
} flag_def;

static const flag_def flags[] = {
    {"config-file", T_STR, "", ON},
    {"data-dir", T_STR, "", ON}, /* default: ${name}.etcd */
    {"wal-dir", T_STR, "", ON},
    {"listen-peer-urls", T_URLS, "http://localhost:2380", ON},
    {"listen-client-urls", T_URLS, "http://localhost:2379", ON},
    {"listen-client-http-urls", T_URLS, "", LATER},
    {"listen-metrics-urls", T_URLS, "", LATER},
    {"max-snapshots", T_UINT, "5", ON},
    {"max-wals", T_UINT, "5", ON},
    {"name", T_STR, "default", ON},
    {"snapshot-count", T_UINT, "100000", ON},
    {"heartbeat-interval", T_UINT, "100", ON},
    {"election-timeout", T_UINT, "1000", ON},
    {"initial-election-tick-advance", T_BOOL, "true", ON},
    {"quota-backend-bytes", T_INT, "0", ON},
    {"backend-bbolt-freelist-type", T_STR, "map", NOOP},
    {"backend-batch-interval", T_DUR, "0s", NOOP},
    {"backend-batch-limit", T_INT, "0", NOOP},
    {"max-txn-ops", T_UINT, "128", ON},
    {"max-request-bytes", T_UINT, "1572864", ON},
    {"grpc-keepalive-min-time", T_DUR, "5s", ON},
    {"grpc-keepalive-interval", T_DUR, "2h", ON},
    {"grpc-keepalive-timeout", T_DUR, "20s", ON},
    {"socket-reuse-port", T_BOOL, "false", LATER},
    {"socket-reuse-address", T_BOOL, "false", LATER},
    {"max-concurrent-streams", T_UINT, "4294967295", LATER},
    {"raft-read-timeout", T_DUR, "5s", NOOP},
    {"raft-write-timeout", T_DUR, "5s", NOOP},
    {"initial-advertise-peer-urls", T_URLS, "http://localhost:2380", ON},
    {"advertise-client-urls", T_URLS, "http://localhost:2379", ON},
    {"discovery", T_STR, "", LATER},
    {"discovery-fallback", T_STR, "proxy", NOOP},
    {"discovery-proxy", T_STR, "", LATER},
    {"discovery-srv", T_STR, "", LATER},
    {"discovery-srv-name", T_STR, "", LATER},
    {"initial-cluster", T_STR, "", ON}, /* default: name=initial-advertise-peer-urls */
    {"initial-cluster-token", T_STR, "etcd-cluster", ON},
    {"initial-cluster-state", T_STR, "new", ON},
    {"strict-reconfig-check", T_BOOL, "true", ON},
    {"pre-vote", T_BOOL, "true", ON},
    {"enable-v2", T_BOOL, "false", LATER},
    {"experimental-enable-v2v3", T_STR, "", LATER},
    {"v2-deprecation", T_STR, "not-yet", NOOP},
    {"proxy", T_STR, "off", LATER},
    {"proxy-failure-wait", T_UINT, "5000", NOOP},
    {"proxy-refresh-interval", T_UINT, "30000", NOOP},
    {"proxy-dial-timeout", T_UINT, "1000", NOOP},
    {"proxy-write-timeout", T_UINT, "5000", NOOP},
    {"proxy-read-timeout", T_UINT, "0", NOOP},
    {"cert-file", T_STR, "", LATER},
    {"key-file", T_STR, "", LATER},
    {"client-cert-file", T_STR, "", LATER},
    {"client-key-file", T_STR, "", LATER},
    {"client-cert-auth", T_BOOL, "false", LATER},
    {"client-crl-file", T_STR, "", LATER},
    {"client-cert-allowed-hostname", T_STR, "", LATER},
    {"trusted-ca-file", T_STR, "", LATER},
    {"auto-tls", T_BOOL, "false", LATER},
    {"peer-cert-file", T_STR, "", LATER},
    {"peer-key-file", T_STR, "", LATER},
    {"peer-client-cert-file", T_STR, "", LATER},
    {"peer-client-key-file", T_STR, "", LATER},
    {"peer-client-cert-auth", T_BOOL, "false", LATER},
    {"peer-trusted-ca-file", T_STR, "", LATER},
    {"peer-auto-tls", T_BOOL, "false", LATER},
    {"self-signed-cert-validity", T_UINT, "1", LATER},
    {"peer-crl-file", T_STR, "", LATER},
    {"peer-cert-allowed-cn", T_STR, "", LATER},
    {"peer-cert-allowed-hostname", T_STR, "", LATER},
    {"cipher-suites", T_STR, "", LATER},
    {"experimental-peer-skip-client-san-verification", T_BOOL, "false", LATER},
    {"tls-min-version", T_STR, "TLS1.2", LATER},
    {"tls-max-version", T_STR, "", LATER},
    {"cors", T_STR, "*", NOOP},
    {"host-whitelist", T_STR, "*", NOOP},
    {"logger", T_STR, "zap", LATER},
    {"log-outputs", T_STR, "default", LATER},
    {"log-level", T_STR, "info", ON},
    {"enable-log-rotation", T_BOOL, "false", LATER},
    {"log-rotation-config-json", T_STR,
     "{\"maxsize\": 100, \"maxage\": 0, \"maxbackups\": 0, \"localtime\": false, \"compress\": false}", NOOP},
    {"version", T_BOOL, "false", ON},
    {"auto-compaction-retention", T_STR, "0", ON},
    {"auto-compaction-mode", T_STR, "periodic", ON},
    {"enable-pprof", T_BOOL, "false", LATER},
    {"metrics", T_STR, "basic", NOOP},
    {"experimental-enable-distributed-tracing", T_BOOL, "false", LATER},
    {"experimental-distributed-tracing-address", T_STR, "0.0.0.0:4317", NOOP},
    {"experimental-distributed-tracing-service-name", T_STR, "etcd", NOOP},
    {"experimental-distributed-tracing-instance-id", T_STR, "", NOOP},
    {"experimental-distributed-tracing-sampling-rate", T_INT, "0", NOOP},
    {"auth-token", T_STR, "simple", LATER},
    {"bcrypt-cost", T_UINT, "10", LATER},
    {"auth-token-ttl", T_UINT, "300", LATER},
    {"enable-grpc-gateway", T_BOOL, "true", NOOP},
    {"experimental-initial-corrupt-check", T_BOOL, "false", LATER},
    {"experimental-corrupt-check-time", T_DUR, "0s", LATER},
    {"experimental-compact-hash-check-enabled", T_BOOL, "false", LATER},
    {"experimental-compact-hash-check-time", T_DUR, "1m", LATER},
    /* Synod always checkpoints remaining TTLs and persists them (etcd 3.6's
     * behaviour); either value is accepted. */
    {"experimental-enable-lease-checkpoint", T_BOOL, "false", ON},
    {"experimental-enable-lease-checkpoint-persist", T_BOOL, "false", ON},
    {"experimental-compaction-batch-limit", T_INT, "1000", NOOP},
    {"experimental-compaction-sleep-interval", T_DUR, "10ms", NOOP},
    {"experimental-watch-progress-notify-interval", T_DUR, "10m", ON},
    {"experimental-downgrade-check-time", T_DUR, "5s", NOOP},
    {"experimental-warning-apply-duration", T_DUR, "100ms", NOOP},
    {"experimental-memory-mlock", T_BOOL, "false", LATER},
    {"experimental-txn-mode-write-with-shared-buffer", T_BOOL, "true", NOOP},
    {"experimental-stop-grpc-service-on-defrag", T_BOOL, "false", LATER},
    {"experimental-bootstrap-defrag-threshold-megabytes", T_UINT, "0", NOOP},
    {"experimental-snapshot-catchup-entries", T_UINT, "5000", LATER},
    {"unsafe-no-fsync", T_BOOL, "false", LATER},
    {"force-new-cluster", T_BOOL, "false", LATER},
};
enum { N_FLAGS = sizeof flags / sizeof flags[0] };

/* Where each flag's value came from, as text, before conversion. */
typedef struct {
  char *value[N_FLAGS];
  bool set[N_FLAGS];
} raw_config;

static int find_flag(const char *name, size_t len) {
  for (int i = 0; i < N_FLAGS; i++)
    if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0) return i;
  return -1;
}

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, n, fmt, ap);
  va_end(ap);
  return -1;
}

static void raw_set(raw_config *raw, int i, const char *v) {
  free(raw->value[i]);
  raw->value[i] = xstrdup(v);
  raw->set[i] = true;
}

/* ---------------------------------------------------------------- values */

static int parse_bool(const char *s, bool *out) {
  /* Go's strconv.ParseBool */
  static const char *t[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *f[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(s, t[i]) == 0) return *out = true, 0;
    if (strcmp(s, f[i]) == 0) return *out = false, 0;
  }
  return -1;
}

static int parse_u64(const char *s, uint64_t *out) {
  if (!*s || *s == '-' || *s == '+') return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

static int parse_i64(const char *s, int64_t *out) {
  if (!*s) return -1;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 0);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

int parse_duration_ms(const char *s, int64_t *out) {
  /* Go's time.ParseDuration, to millisecond precision. */
  const char *p = s;
  bool neg = false;
  if (*p == '-' || *p == '+') neg = *p++ == '-';
  if (strcmp(p, "0") == 0) return *out = 0, 0;
  if (!*p) return -1;
  double total_ms = 0;
  while (*p) {
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*p) && *p != '.') return -1;
    double v = strtod(p, &end);
    if (errno || end == p) return -1;
    p = end;
    double unit;
    if (strncmp(p, "ns", 2) == 0) unit = 1e-6, p += 2;
    else if (strncmp(p, "us", 2) == 0 || strncmp(p, "\xc2\xb5s", 3) == 0) unit = 1e-3, p += (*p == 'u' ? 2 : 3);
    else if (strncmp(p, "ms", 2) == 0) unit = 1, p += 2;
    else if (*p == 's') unit = 1000, p++;
    else if (*p == 'm') unit = 60000, p++;
    else if (*p == 'h') unit = 3600000, p++;
    else return -1;
    total_ms += v * unit;
  }
  if (total_ms > 9.2e15) return -1;
  *out = (int64_t)(neg ? -total_ms : total_ms);
  return 0;
}

void strlist_free(strlist *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

int strlist_split(strlist *out, const char *csv) {
  strlist_free(out);
  if (!*csv) return 0;
  const char *p = csv;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    while (len && isspace((unsigned char)*p)) p++, len--;
    while (len && isspace((unsigned char)p[len - 1])) len--;
    if (!len) return -1;
    out->v = xrealloc(out->v, (out->n + 1) * sizeof *out->v);
    char *item = xmalloc(len + 1);
    memcpy(item, p, len);
    item[len] = 0;
    out->v[out->n++] = item;
    if (!comma) break;
    p = comma + 1;
  }
  return 0;
}

int url_host_port(const char *url, char *out, size_t out_len, bool *tls) {
  const char *rest;
  if (strncmp(url, "http://", 7) == 0) rest = url + 7, *tls = false;
  else if (strncmp(url, "https://", 8) == 0) rest = url + 8, *tls = true;
  else return -1;
  size_t len = strcspn(rest, "/?#");
  if (len == 0 || len >= out_len) return -1;
  memcpy(out, rest, len);
  out[len] = 0;
  /* need host:port; [v6]:port is fine */
  const char *colon = strrchr(out, ':');
  if (!colon || colon == out || !colon[1]) return -1;
  for (const char *c = colon + 1; *c; c++)
    if (!isdigit((unsigned char)*c)) return -1;
  if (rest[len] && strcmp(rest + len, "/") != 0) return -1; /* etcd: URLs must not have a path */
  return 0;
}

/* ---------------------------------------------------------------- YAML */

/* The subset of YAML etcd's sample configuration uses: "key: value" lines,
 * comments, quoted scalars, flow lists "[a, b]", block lists, and nested
 * mappings (only the TLS blocks, which must stay empty for now). */
static char *yaml_scalar(char *v) {
  while (isspace((unsigned char)*v)) v++;
  size_t n = strlen(v);
  while (n && isspace((unsigned char)v[n - 1])) v[--n] = 0;
  if (n >= 2 && ((v[0] == '\'' && v[n - 1] == '\'') || (v[0] == '"' && v[n - 1] == '"'))) {
    v[n - 1] = 0;
    return v + 1;
  }
  /* strip a trailing comment from an unquoted scalar */
  char *hash = strstr(v, " #");
  if (hash) {
    *hash = 0;
    n = strlen(v);
    while (n && isspace((unsigned char)v[n - 1])) v[--n] = 0;
  }
  if (strcmp(v, "~") == 0 || strcmp(v, "null") == 0) return v + n; /* empty */
  return v;
}

static void flow_list_to_csv(char *v) {
  /* "[a, 'b']" -> "a,b" in place */
  size_t n = strlen(v);
  if (n < 2 || v[0] != '[' || v[n - 1] != ']') return;
  v[n - 1] = 0;
  char *out = v;
  char *item = strtok(v + 1, ",");
  bool first = true;
  char tmp[4096];
  tmp[0] = 0;
  while (item) {
    char *s = yaml_scalar(item);
    if (!first) strncat(tmp, ",", sizeof tmp - strlen(tmp) - 1);
    strncat(tmp, s, sizeof tmp - strlen(tmp) - 1);
    first = false;
    item = strtok(NULL, ",");
  }
  strcpy(out, tmp);
}

static int load_yaml(raw_config *raw, const char *path, char *err, size_t err_len) {
  uint8_t *data;
  size_t n;
  if (read_file(path, &data, &n) < 0)
    return fail(err, err_len, "cannot load config file %s: %s", path, strerror(errno));
  char *text = xrealloc(data, n + 1);
  text[n] = 0;
  int lineno = 0, list_flag = -1, nested_flag = -1;
  char list_csv[8192] = "";
  char *save = NULL;
  int rc = 0;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    lineno++;
    char *l = line;
    size_t len = strlen(l);
    if (len && l[len - 1] == '\r') l[--len] = 0;
    int indent = 0;
    while (l[indent] == ' ') indent++;
    char *body = l + indent;
    if (!*body || *body == '#' || strcmp(body, "---") == 0) continue;
    if (indent > 0 && body[0] == '-' && (body[1] == ' ' || !body[1]) && list_flag >= 0) {
      char *item = yaml_scalar(body + 1);
      if (*list_csv) strncat(list_csv, ",", sizeof list_csv - strlen(list_csv) - 1);
      strncat(list_csv, item, sizeof list_csv - strlen(list_csv) - 1);
      raw_set(raw, list_flag, list_csv);
      continue;
    }
    if (indent > 0) {
      if (nested_flag < 0) {
        rc = fail(err, err_len, "error parsing config file %s: line %d: unexpected indentation", path, lineno);
        break;
      }
      /* Keys inside client-transport-security / peer-transport-security. */
      char *colon = strchr(body, ':');
      char *v = colon ? yaml_scalar(colon + 1) : body;
      bool b;
      if (*v && !(parse_bool(v, &b) == 0 && !b)) {
        rc = fail(err, err_len, "config file %s: line %d: TLS settings (%.*s) are not supported yet", path,
                  lineno, colon ? (int)(colon - body) : (int)strlen(body), body);
        break;
      }
      continue;
    }
    list_flag = nested_flag = -1;
    list_csv[0] = 0;
    char *colon = strchr(body, ':');
    if (!colon) {
      rc = fail(err, err_len, "error parsing config file %s: line %d: expected \"key: value\"", path, lineno);
      break;
    }
    *colon = 0;
    char *key = body;
    size_t klen = strlen(key);
    while (klen && key[klen - 1] == ' ') key[--klen] = 0;
    char *v = yaml_scalar(colon + 1);
    if (strcmp(key, "client-transport-security") == 0 || strcmp(key, "peer-transport-security") == 0) {
      nested_flag = 0;
      continue;
    }
    int i = find_flag(key, klen);
    if (i < 0) {
      rc = fail(err, err_len, "error unmarshaling config file %s: unknown field \"%s\" (line %d)", path, key, lineno);
      break;
    }
    if (!*v) {
      list_flag = i; /* maybe a block list follows */
      continue;
    }
    flow_list_to_csv(v);
    raw_set(raw, i, v);
  }
  free(text);
  return rc;
}

/* ---------------------------------------------------------------- parsing */

static int env_flag(const char *name, char *out, size_t out_len) {
  /* "initial-cluster" -> "ETCD_INITIAL_CLUSTER" */
  int n = snprintf(out, out_len, "ETCD_");
  for (const char *c = name; *c && (size_t)n < out_len - 1; c++)
    out[n++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
  out[n] = 0;
  return n;
}

static int parse_argv(raw_config *raw, int argc, char **argv, char *err, size_t err_len, bool *help) {
  for (int a = 1; a < argc; a++) {
    const char *arg = argv[a];
    if (arg[0] != '-' || !arg[1]) return fail(err, err_len, "'%s' is not a valid flag", arg);
    const char *name = arg + 1;
    if (*name == '-') name++;
    if (!*name || *name == '-' || *name == '=') return fail(err, err_len, "bad flag syntax: %s", arg);
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    if ((nlen == 1 && name[0] == 'h') || (nlen == 4 && strncmp(name, "help", 4) == 0)) {
      *help = true;
      return 0;
    }
    int i = find_flag(name, nlen);
    if (i < 0) return fail(err, err_len, "flag provided but not defined: -%.*s", (int)nlen, name);
    const char *value;
    if (eq) {
      value = eq + 1;
    } else if (flags[i].type == T_BOOL) {
      value = "true"; /* Go: a bool flag never consumes the next argument */
    } else {
      if (a + 1 >= argc) return fail(err, err_len, "flag needs an argument: -%s", flags[i].name);
      value = argv[++a];
    }
    raw_set(raw, i, value);
  }
  return 0;
}

static int apply_env(raw_config *raw, char **envp, char *err, size_t err_len) {
  char key[128];
  for (int i = 0; i < N_FLAGS; i++) {
    env_flag(flags[i].name, key, sizeof key);
    const char *v = getenv(key);
    if (!v || !*v) continue;
    if (raw->set[i])
      return fail(err, err_len,
                  "conflicting environment variable \"%s\" is shadowed by corresponding command-line flag "
                  "(either unset environment variable or disable flag)",
                  key);
    raw_set(raw, i, v);
    log_info("recognized and used environment variable %s=%s", key, v);
  }
  for (char **e = envp; e && *e; e++) {
    if (strncmp(*e, "ETCD_", 5) != 0) continue;
    const char *eq = strchr(*e, '=');
    size_t klen = eq ? (size_t)(eq - *e) : strlen(*e);
    bool known = false;
    for (int i = 0; i < N_FLAGS && !known; i++) {
      int n = env_flag(flags[i].name, key, sizeof key);
      known = (size_t)n == klen && strncmp(key, *e, klen) == 0;
    }
    /* etcdctl's own variables (ETCDCTL_*) do not start with ETCD_. */
    if (!known) log_warn("unrecognized environment variable %s", *e);
  }
  return 0;
}

static const char *value_of(const raw_config *raw, const char *name) {
  int i = find_flag(name, strlen(name));
  return raw->value[i] ? raw->value[i] : flags[i].def;
}

static bool same_value(flag_type t, const char *a, const char *b) {
  bool x, y;
  int64_t p, q;
  uint64_t u, v;
  switch (t) {
    case T_BOOL: return parse_bool(a, &x) == 0 && parse_bool(b, &y) == 0 && x == y;
    case T_DUR: return parse_duration_ms(a, &p) == 0 && parse_duration_ms(b, &q) == 0 && p == q;
    case T_UINT: return parse_u64(a, &u) == 0 && parse_u64(b, &v) == 0 && u == v;
    case T_INT: return parse_i64(a, &p) == 0 && parse_i64(b, &q) == 0 && p == q;
    default: return strcmp(a, b) == 0;
  }
}

static int check_types_and_support(const raw_config *raw, char *err, size_t err_len) {
  for (int i = 0; i < N_FLAGS; i++) {
    if (!raw->set[i]) continue;
    const flag_def *f = &flags[i];
    const char *v = raw->value[i];
    bool b;
    int64_t d;
    uint64_t u;
    bool ok = true;
    switch (f->type) {
      case T_BOOL: ok = parse_bool(v, &b) == 0; break;
      case T_UINT: ok = parse_u64(v, &u) == 0; break;
      case T_INT: ok = parse_i64(v, &d) == 0; break;
      case T_DUR: ok = parse_duration_ms(v, &d) == 0; break;
      default: break;
    }
    if (!ok) return fail(err, err_len, "invalid value \"%s\" for flag -%s: parse error", v, f->name);
    if (f->support == LATER && !same_value(f->type, v, f->def))
      return fail(err, err_len, "--%s=%s is not supported yet by Synod (only etcd's default \"%s\" is accepted)",
                  f->name, v, f->def);
    if (f->support == NOOP && !same_value(f->type, v, f->def))
      log_warn("--%s=%s has no effect in Synod (it tunes a component Synod does not have)", f->name, v);
  }
  return 0;
}

static int to_urls(strlist *out, const raw_config *raw, const char *name, char *err, size_t err_len) {
  const char *v = value_of(raw, name);
  if (strlist_split(out, v) < 0) return fail(err, err_len, "invalid value \"%s\" for flag -%s: empty URL", v, name);
  for (size_t i = 0; i < out->n; i++) {
    char hp[512];
    bool tls;
    if (url_host_port(out->v[i], hp, sizeof hp, &tls) < 0)
      return fail(err, err_len, "invalid value \"%s\" for flag -%s: URL scheme must be http or https, with host:port and no path", v, name);
    if (tls) return fail(err, err_len, "--%s=%s: TLS (https) is not supported yet by Synod", name, v);
  }
  return 0;
}

static int convert(server_config *cfg, const raw_config *raw, char *err, size_t err_len) {
  bool b = false;
  uint64_t u;
  int64_t d;
  cfg->name = xstrdup(value_of(raw, "name"));
  const char *dd = value_of(raw, "data-dir");
  if (*dd) {
    cfg->data_dir = xstrdup(dd);
  } else {
    cfg->data_dir = xmalloc(strlen(cfg->name) + 6);
    sprintf(cfg->data_dir, "%s.etcd", cfg->name);
  }
  const char *wd = value_of(raw, "wal-dir");
  cfg->wal_dir = *wd ? xstrdup(wd) : NULL;
  if (to_urls(&cfg->listen_client_urls, raw, "listen-client-urls", err, err_len) < 0 ||
      to_urls(&cfg->advertise_client_urls, raw, "advertise-client-urls", err, err_len) < 0 ||
      to_urls(&cfg->listen_peer_urls, raw, "listen-peer-urls", err, err_len) < 0 ||
      to_urls(&cfg->initial_advertise_peer_urls, raw, "initial-advertise-peer-urls", err, err_len) < 0)
    return -1;
  if (cfg->listen_client_urls.n == 0) return fail(err, err_len, "--listen-client-urls must not be empty");
  if (cfg->advertise_client_urls.n == 0)
    return fail(err, err_len, "--advertise-client-urls is required when --listen-client-urls is set explicitly");

  const char *ic = value_of(raw, "initial-cluster");
  if (*ic) {
    cfg->initial_cluster = xstrdup(ic);
  } else {
    /* etcd: default is name=each initial advertise peer URL */
    buf b2 = {0};
    for (size_t i = 0; i < cfg->initial_advertise_peer_urls.n; i++) {
      if (i) buf_append(&b2, ",", 1);
      buf_append(&b2, cfg->name, strlen(cfg->name));
      buf_append(&b2, "=", 1);
      buf_append(&b2, cfg->initial_advertise_peer_urls.v[i], strlen(cfg->initial_advertise_peer_urls.v[i]));
    }
    buf_append(&b2, "", 1);
    cfg->initial_cluster = (char *)b2.data;
  }
  cfg->initial_cluster_state = xstrdup(value_of(raw, "initial-cluster-state"));
  if (strcmp(cfg->initial_cluster_state, "new") != 0 && strcmp(cfg->initial_cluster_state, "existing") != 0)
    return fail(err, err_len, "invalid value \"%s\" for flag -initial-cluster-state: valid values are \"new\" and \"existing\"", cfg->initial_cluster_state);
  cfg->initial_cluster_token = xstrdup(value_of(raw, "initial-cluster-token"));

  parse_u64(value_of(raw, "heartbeat-interval"), &cfg->heartbeat_ms);
  parse_u64(value_of(raw, "election-timeout"), &cfg->election_ms);
  if (cfg->heartbeat_ms == 0) return fail(err, err_len, "--heartbeat-interval must be > 0");
  if (cfg->election_ms < 5 * cfg->heartbeat_ms)
    return fail(err, err_len, "--election-timeout[%" PRIu64 "ms] should be at least as 5 times as --heartbeat-interval[%" PRIu64 "ms]",
                cfg->election_ms, cfg->heartbeat_ms);
  if (cfg->election_ms > 50000)
    return fail(err, err_len, "--election-timeout[%" PRIu64 "ms] is too long, and should be set less than 50000ms", cfg->election_ms);
  parse_u64(value_of(raw, "snapshot-count"), &cfg->snapshot_count);
  if (cfg->snapshot_count == 0) cfg->snapshot_count = 100000;
  parse_i64(value_of(raw, "quota-backend-bytes"), &cfg->quota_backend_bytes);
  if (cfg->quota_backend_bytes < 0)
    return fail(err, err_len, "--quota-backend-bytes must not be negative");
  if (cfg->quota_backend_bytes == 0) cfg->quota_backend_bytes = 2LL << 30; /* etcd's 2 GiB */
  if (cfg->quota_backend_bytes > 8LL << 30)
    log_warn("quota-backend-bytes %" PRId64 " exceeds the 8 GiB etcd recommends", cfg->quota_backend_bytes);
  parse_u64(value_of(raw, "max-request-bytes"), &cfg->max_request_bytes);
  if (cfg->max_request_bytes == 0) return fail(err, err_len, "--max-request-bytes must be > 0");
  if (cfg->max_request_bytes > (1u << 30)) return fail(err, err_len, "--max-request-bytes must be at most 1 GiB");
  parse_u64(value_of(raw, "max-txn-ops"), &cfg->max_txn_ops);
  if (cfg->max_txn_ops == 0) return fail(err, err_len, "--max-txn-ops must be > 0");
  parse_u64(value_of(raw, "max-snapshots"), &cfg->max_snapshots);
  parse_u64(value_of(raw, "max-wals"), &cfg->max_wals);
  parse_bool(value_of(raw, "strict-reconfig-check"), &cfg->strict_reconfig_check);
  parse_bool(value_of(raw, "pre-vote"), &cfg->pre_vote);
  parse_bool(value_of(raw, "force-new-cluster"), &cfg->force_new_cluster);

  const char *mode = value_of(raw, "auto-compaction-mode");
  const char *ret = value_of(raw, "auto-compaction-retention");
  if (strcmp(mode, "periodic") == 0) {
    /* A plain number means hours (etcd's compatibility rule). */
    if (parse_i64(ret, &d) == 0) d *= 3600000;
    else if (parse_duration_ms(ret, &d) < 0 || d < 0)
      return fail(err, err_len, "invalid auto-compaction-retention \"%s\" for periodic mode", ret);
    cfg->auto_compaction_mode = d ? COMPACT_PERIODIC : COMPACT_OFF;
    cfg->auto_compaction_retention = d;
  } else if (strcmp(mode, "revision") == 0) {
    if (parse_i64(ret, &d) < 0 || d < 0)
      return fail(err, err_len, "invalid auto-compaction-retention \"%s\" for revision mode", ret);
    cfg->auto_compaction_mode = d ? COMPACT_REVISION : COMPACT_OFF;
    cfg->auto_compaction_retention = d;
  } else {
    return fail(err, err_len, "unknown auto-compaction-mode \"%s\"", mode);
  }

  cfg->log_level = xstrdup(value_of(raw, "log-level"));
  log_level lvl;
  if (log_level_parse(cfg->log_level, &lvl) < 0)
    return fail(err, err_len, "unknown log-level \"%s\" (debug, info, warn, error, panic, fatal)", cfg->log_level);
  parse_duration_ms(value_of(raw, "experimental-watch-progress-notify-interval"), &cfg->watch_progress_notify_ms);
  parse_duration_ms(value_of(raw, "grpc-keepalive-min-time"), &cfg->grpc_keepalive_min_time_ms);
  parse_duration_ms(value_of(raw, "grpc-keepalive-interval"), &cfg->grpc_keepalive_interval_ms);
  parse_duration_ms(value_of(raw, "grpc-keepalive-timeout"), &cfg->grpc_keepalive_timeout_ms);
  parse_bool(value_of(raw, "version"), &b);
  cfg->show_version = b;
  (void)u;
  return 0;
}

int config_parse(server_config *cfg, int argc, char **argv, char **envp, char *err, size_t err_len, int *exit_code) {
  raw_config raw;
  memset(&raw, 0, sizeof raw);
  memset(cfg, 0, sizeof *cfg);
  *exit_code = 1;
  int rc = -1;
  bool help = false;
  if (parse_argv(&raw, argc, argv, err, err_len, &help) < 0) {
    *exit_code = 2;
    goto out;
  }
  if (help) {
    cfg->show_help = true;
    *exit_code = 0;
    rc = 0;
    goto out;
  }
  if (apply_env(&raw, envp, err, err_len) < 0) goto out;
  int cf = find_flag("config-file", 11);
  if (raw.set[cf] && *raw.value[cf]) {
    /* etcd: the file replaces every other flag and variable. */
    char *path = xstrdup(raw.value[cf]);
    for (int i = 0; i < N_FLAGS; i++) {
      if (raw.set[i] && i != cf && strcmp(flags[i].name, "version") != 0)
        log_warn("--%s is ignored because --config-file is given", flags[i].name);
      if (strcmp(flags[i].name, "version") == 0) continue;
      free(raw.value[i]);
      raw.value[i] = NULL;
      raw.set[i] = false;
    }
    int lr = load_yaml(&raw, path, err, err_len);
    free(path);
    if (lr < 0) goto out;
  }
  if (check_types_and_support(&raw, err, err_len) < 0) goto out;
  if (convert(cfg, &raw, err, err_len) < 0) goto out;
  rc = 0;
  *exit_code = 0;
out:
  for (int i = 0; i < N_FLAGS; i++) free(raw.value[i]);
  return rc;
}

void config_free(server_config *cfg) {
  free(cfg->name);
  free(cfg->data_dir);
  free(cfg->wal_dir);
  strlist_free(&cfg->listen_client_urls);
  strlist_free(&cfg->advertise_client_urls);
  strlist_free(&cfg->listen_peer_urls);
  strlist_free(&cfg->initial_advertise_peer_urls);
  free(cfg->initial_cluster);
  free(cfg->initial_cluster_state);
  free(cfg->initial_cluster_token);
  free(cfg->log_level);
  memset(cfg, 0, sizeof *cfg);
}

const char *config_usage(void) {
  return "Usage:\n"
         "\n"
         "  synod [flags]\n"
         "    Start a Synod member (etcd v3 API compatible).\n"
         "\n"
         "  synod --version\n"
         "    Show the version.\n"
         "\n"
         "Synod takes etcd 3.5's flags and ETCD_* environment variables, with etcd's\n"
         "defaults. Member:\n"
         "  --name 'default'                      human-readable name for this member\n"
         "  --data-dir '${name}.etcd'             path to the data directory\n"
         "  --wal-dir ''                          dedicated WAL directory\n"
         "  --snapshot-count '100000'             committed entries between snapshots\n"
         "  --heartbeat-interval '100'            ms between heartbeats\n"
         "  --election-timeout '1000'             ms before an election starts\n"
         "  --listen-peer-urls 'http://localhost:2380'\n"
         "  --listen-client-urls 'http://localhost:2379'\n"
         "  --max-snapshots '5'  --max-wals '5'\n"
         "  --quota-backend-bytes '0'             backend size limit (0: 2 GiB)\n"
         "  --max-txn-ops '128'                   operations per transaction\n"
         "  --max-request-bytes '1572864'         largest client request\n"
         "  --grpc-keepalive-min-time '5s'  --grpc-keepalive-interval '2h'  --grpc-keepalive-timeout '20s'\n"
         "Clustering:\n"
         "  --initial-advertise-peer-urls 'http://localhost:2380'\n"
         "  --initial-cluster 'default=http://localhost:2380'\n"
         "  --initial-cluster-state 'new'         'new' or 'existing'\n"
         "  --initial-cluster-token 'etcd-cluster'\n"
         "  --advertise-client-urls 'http://localhost:2379'\n"
         "  --strict-reconfig-check 'true'  --pre-vote 'true'\n"
         "Other:\n"
         "  --auto-compaction-mode 'periodic'     'periodic' or 'revision'\n"
         "  --auto-compaction-retention '0'       hours / duration, or revisions; 0 disables\n"
         "  --experimental-watch-progress-notify-interval '10m'\n"
         "  --log-level 'info'                    debug, info, warn, error, panic, fatal\n"
         "  --config-file ''                      YAML file; replaces all other flags\n"
         "  --version                             print the version and exit\n"
         "\n"
         "Every other etcd flag is accepted at etcd's default value; see docs/configuration.md.\n";
}
