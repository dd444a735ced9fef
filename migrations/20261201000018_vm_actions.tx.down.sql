DROP TABLE vm_actions;
