/* compactor.h (private to kvcore/server) - etcd's auto-compaction:
 * --auto-compaction-mode=periodic keeps a time window of history,
 * =revision keeps a number of revisions. */
#ifndef SYNOD_SERVER_COMPACTOR_H
#define SYNOD_SERVER_COMPACTOR_H

#include "node.h"

compactor *compactor_start(node *n); /* NULL when auto-compaction is off */
void compactor_stop(compactor *c);

#endif
