/* Corking a client connection while a group of replies goes out.
 *
 * gRPC 1.51 sends each unary reply with its own sendmsg as soon as its batch
 * starts, and on loopback most of a sendmsg is the transmission itself (the
 * segment, and the receiver's side of TCP, run in the sender's context):
 * about 5 us of the 7 us a reply cost. A reply group (rpc_reply_group_end)
 * typically holds several replies for the same connection, so the queue
 * thread sets TCP_CORK on each connection with two or more of them, starts
 * the group's batches (each still a sendmsg, now only appending to the
 * socket's queue), and uncorks, which sends what queued in one segment.
 *
 * gRPC does not say which socket a call uses; its peer address does. The
 * sockets are found by one pass of getpeername() over the process's
 * descriptors, kept in a table by peer address, and checked again before
 * every use, since a descriptor can be closed and reused at any moment. A
 * peer not found waits for the next pass, at most one every
 * SCAN_INTERVAL_MS, so a flood of new connections cannot turn into a flood
 * of passes. Whatever a
 * descriptor turns out to be, its cork is undone before the queue thread
 * returns to gRPC: at worst an unrelated socket is corked for the span of
 * one loop. */
#include "base.h"
#include "rpc_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <grpc/support/alloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 address and port; IPv4 is kept as ::ffff:a.b.c.d, as a
 * dual-stack listener reports it (while gRPC names it ipv4:a.b.c.d). */
typedef struct {
  uint8_t addr[16];
  uint16_t port; /* network order */
} endpoint;

typedef struct {
  endpoint peer;
  int fd; /* -1: empty */
} slot;

/* Open addressing, rebuilt whole by every pass (so no deletions): room
 * for TABLE_FILL sockets, the rest are simply not corked. */
enum { TABLE_SIZE = 4096, TABLE_FILL = 3072, SCAN_INTERVAL_MS = 100 };

/* Shared by the queue threads (one, as the server runs; tests use two). */
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static slot table[TABLE_SIZE];
static bool table_ready;
static int64_t last_scan_ms;

static void v4_mapped(endpoint *e, const void *in_addr) {
  memset(e->addr, 0, 10);
  e->addr[10] = e->addr[11] = 0xff;
  memcpy(e->addr + 12, in_addr, 4);
}

static bool from_sockaddr(const struct sockaddr_storage *ss, endpoint *e) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)ss;
    v4_mapped(e, &in->sin_addr);
    e->port = in->sin_port;
    return true;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const void *)ss;
    memcpy(e->addr, &in6->sin6_addr, 16);
    e->port = in6->sin6_port;
    return true;
  }
  return false;
}

/* gRPC's peer names: "ipv4:127.0.0.1:5432", "ipv6:[::1]:5432". */
static bool parse_peer(const char *peer, endpoint *e) {
  char host[64];
  const char *h, *port;
  size_t n;
  int family;
  if (strncmp(peer, "ipv4:", 5) == 0) {
    h = peer + 5;
    port = strrchr(h, ':');
    if (!port) return false;
    n = (size_t)(port - h);
    family = AF_INET;
  } else if (strncmp(peer, "ipv6:[", 6) == 0) {
    h = peer + 6;
    const char *end = strchr(h, ']');
    if (!end || end[1] != ':') return false;
    n = (size_t)(end - h);
    port = end + 1;
    family = AF_INET6;
  } else {
    return false; /* unix sockets and the like: not corked */
  }
  if (n >= sizeof host) return false;
  memcpy(host, h, n);
  host[n] = 0;
  e->port = htons((uint16_t)atoi(port + 1));
  if (family == AF_INET) {
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1) return false;
    v4_mapped(e, &a);
    return true;
  }
  return inet_pton(AF_INET6, host, e->addr) == 1;
}

static bool same(const endpoint *a, const endpoint *b) {
  return a->port == b->port && memcmp(a->addr, b->addr, 16) == 0;
}

static size_t home_of(const endpoint *e) {
  uint32_t h = 2166136261u; /* FNV-1a over the bytes, then a final mix: */
  for (int i = 0; i < 16; i++) h = (h ^ e->addr[i]) * 16777619u;
  h = (h ^ (e->port & 0xff)) * 16777619u;
  h = (h ^ (e->port >> 8)) * 16777619u;
  h ^= h >> 16; /* the low bits alone depend on only part of the input */
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  return h % TABLE_SIZE;
}

/* The slot holding e, or the empty one where it would go. */
static slot *slot_of(const endpoint *e) {
  size_t i = home_of(e);
  while (table[i].fd >= 0 && !same(&table[i].peer, e)) i = (i + 1) % TABLE_SIZE;
  return &table[i];
}

static bool fd_peer(int fd, endpoint *e) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  return getpeername(fd, (struct sockaddr *)&ss, &len) == 0 && from_sockaddr(&ss, e);
}

/* Rebuilds the table from the peer of every connected socket. */
static void scan(void) {
  for (size_t i = 0; i < TABLE_SIZE; i++) table[i].fd = -1;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return;
  size_t filled = 0;
  for (struct dirent *de; filled < TABLE_FILL && (de = readdir(d));) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    int fd = atoi(de->d_name);
    endpoint e;
    if (fd == dirfd(d) || !fd_peer(fd, &e)) continue;
    slot *s = slot_of(&e);
    if (s->fd < 0) filled++;
    s->peer = e;
    s->fd = fd;
  }
  closedir(d);
}

/* The descriptor of the connection whose far end is `peer`, or -1.
 * Called with table_mu held. */
static int find_fd_locked(const char *peer) {
  endpoint want, got;
  if (!parse_peer(peer, &want)) return -1;
  if (!table_ready) {
    for (size_t i = 0; i < TABLE_SIZE; i++) table[i].fd = -1;
    table_ready = true;
  }
  for (int pass = 0; pass < 2; pass++) {
    slot *s = slot_of(&want);
    /* checked again: the descriptor may have been closed and reused */
    if (s->fd >= 0 && fd_peer(s->fd, &got) && same(&got, &want)) return s->fd;
    int64_t now = time_mono_ms();
    if (pass == 1 || now - last_scan_ms < SCAN_INTERVAL_MS) break;
    last_scan_ms = now;
    scan();
  }
  return -1;
}

int rpc_cork_fd_of(const char *peer) {
  pthread_mutex_lock(&table_mu);
  int fd = find_fd_locked(peer);
  pthread_mutex_unlock(&table_mu);
  return fd;
}

bool rpc_cork_enabled(void) {
  static atomic_int enabled = -1;
  int e = atomic_load(&enabled);
  if (e < 0) {
    const char *v = getenv("SYNOD_CORK");
    e = !(v && strcmp(v, "0") == 0);
    atomic_store(&enabled, e);
  }
  return e;
}

void rpc_cork_begin(rpc_cork *k, grpc_call *const *calls, size_t n) {
  k->n = 0;
  if (n < 2) return;
  /* The group's distinct connections (by peer name), with their reply
   * counts: one lookup per connection, not per reply. */
  char *peers[RPC_CORK_MAX_FDS];
  size_t counts[RPC_CORK_MAX_FDS], n_peers = 0;
  for (size_t i = 0; i < n; i++) {
    char *peer = grpc_call_get_peer(calls[i]);
    if (!peer) continue;
    size_t j = 0;
    while (j < n_peers && strcmp(peers[j], peer) != 0) j++;
    if (j < n_peers) {
      counts[j]++;
      gpr_free(peer);
    } else if (n_peers < RPC_CORK_MAX_FDS) {
      peers[n_peers] = peer;
      counts[n_peers++] = 1;
    } else {
      gpr_free(peer);
    }
  }
  pthread_mutex_lock(&table_mu);
  for (size_t j = 0; j < n_peers; j++) {
    int fd = counts[j] >= 2 ? find_fd_locked(peers[j]) : -1;
    int on = 1;
    if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0) k->fds[k->n++] = fd;
    gpr_free(peers[j]);
  }
  pthread_mutex_unlock(&table_mu);
}

void rpc_cork_end(rpc_cork *k) {
  int off = 0;
  for (size_t i = 0; i < k->n; i++) setsockopt(k->fds[i], IPPROTO_TCP, TCP_CORK, &off, sizeof off);
  k->n = 0;
}
