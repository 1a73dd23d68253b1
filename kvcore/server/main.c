#include "server.h"

int main(int argc, char **argv, char **envp) { return synod_main(argc, argv, envp); }
