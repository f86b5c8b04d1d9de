#include "skip.h"

int main(int argc, char** argv) { return loupe::test::run_tests(argc, argv); }
