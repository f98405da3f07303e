package lease_test

func workerMain() bool { return false }
