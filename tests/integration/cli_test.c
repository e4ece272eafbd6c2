#include <criterion/criterion.h>
#include "harness.h"
Test(stub_cli, stub) {}
