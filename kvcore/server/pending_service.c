/* Every etcd method Synod does not serve yet answers UNIMPLEMENTED with a
 * message naming it, instead of gRPC's generic "unknown service": a client
 * learns at once what is missing. Auth is off (as on a fresh etcd), which
 * AuthStatus and Authenticate report the way etcd does. */
#include "errors.h"
#include "node.h"
#include "services.h"

#include <stdio.h>

static void not_yet(const char *path, char *msg, size_t len) {
  snprintf(msg, len, "synod: %s is not supported yet", path + 1);
}

static void pending_unary(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  char msg[256];
  not_yet(ctx, msg, sizeof msg);
  rpc_fail(call, RPC_UNIMPLEMENTED, msg);
}

static void auth_status_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(ctx, &hdr);
  Etcdserverpb__AuthStatusResponse resp = ETCDSERVERPB__AUTH_STATUS_RESPONSE__INIT;
  resp.header = &hdr;
  resp.enabled = false;
  rpc_reply(call, &resp.base);
}

static void authenticate_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)ctx, (void)m;
  rpc_fail_with(call, &ERR_AUTH_NOT_ENABLED);
}

#define U(path, type) {path, &type##__descriptor, pending_unary, NULL, false, (void *)path}

static const rpc_method pending[] = {
    U("/etcdserverpb.Maintenance/Downgrade", etcdserverpb__downgrade_request),
    U("/etcdserverpb.Auth/AuthEnable", etcdserverpb__auth_enable_request),
    U("/etcdserverpb.Auth/AuthDisable", etcdserverpb__auth_disable_request),
    U("/etcdserverpb.Auth/UserAdd", etcdserverpb__auth_user_add_request),
    U("/etcdserverpb.Auth/UserGet", etcdserverpb__auth_user_get_request),
    U("/etcdserverpb.Auth/UserList", etcdserverpb__auth_user_list_request),
    U("/etcdserverpb.Auth/UserDelete", etcdserverpb__auth_user_delete_request),
    U("/etcdserverpb.Auth/UserChangePassword", etcdserverpb__auth_user_change_password_request),
    U("/etcdserverpb.Auth/UserGrantRole", etcdserverpb__auth_user_grant_role_request),
    U("/etcdserverpb.Auth/UserRevokeRole", etcdserverpb__auth_user_revoke_role_request),
    U("/etcdserverpb.Auth/RoleAdd", etcdserverpb__auth_role_add_request),
    U("/etcdserverpb.Auth/RoleGet", etcdserverpb__auth_role_get_request),
    U("/etcdserverpb.Auth/RoleList", etcdserverpb__auth_role_list_request),
    U("/etcdserverpb.Auth/RoleDelete", etcdserverpb__auth_role_delete_request),
    U("/etcdserverpb.Auth/RoleGrantPermission", etcdserverpb__auth_role_grant_permission_request),
    U("/etcdserverpb.Auth/RoleRevokePermission", etcdserverpb__auth_role_revoke_permission_request),
};

size_t pending_service_methods(node *n, rpc_method *out) {
  size_t k = 0;
  for (size_t i = 0; i < sizeof pending / sizeof pending[0]; i++) out[k++] = pending[i];
  out[k++] = (rpc_method){"/etcdserverpb.Auth/AuthStatus", &etcdserverpb__auth_status_request__descriptor,
                          auth_status_rpc, NULL, false, n};
  out[k++] = (rpc_method){"/etcdserverpb.Auth/Authenticate", &etcdserverpb__authenticate_request__descriptor,
                          authenticate_rpc, NULL, false, n};
  return k;
}
